"""Estimate the motion of a clip: fitted global motion plus statistics of the local flow.

All pixel quantities are in REFERENCE pixels (input pixels x 32 / frame width), so one set of
thresholds serves every size (the world's speeds scale the same way).

Per pair of consecutive frames:
1. Farneback flow (`flow.py`).
2. Global similarity motion  flow(p) = (s R(a) - I) p + t  (p about the image centre, y down,
   a > 0 clockwise): a robust, texture-weighted least-squares fit to the flow, then refined by
   OpenCV's ECC image registration (Farneback under-estimates zoom/rotation flow by ~25 % on smooth
   scenes; ECC aligns the images themselves).
3. `global_gain`: how much the fitted global motion explains the frame change,
   1 - sum|I1 - warp(I0)| / sum|I1 - I0|. A camera motion is explained (gain near 1); a layer moving
   over a still scene is not (the background did not move, so any global warp breaks it: gain <= ~0).
4. Statistics of the moving pixels (|flow| > MOVING_PX): mean flow, direction coherence, centroid,
   spread and radial divergence about their centroid.
Summaries are medians over pairs, so one odd pair (a layer appearing after frame 0) does not decide.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor

from miva_lightning.motion.flow import check_video, flow_between, luminance_uint8, upsample

REFERENCE_WIDTH = 32
MOVING_PX = 0.5  # a pixel "moves" when its flow exceeds this many reference pixels per frame
ROBUST_PX = 0.5  # residual scale of the robust global fit (reference pixels)
ROBUST_ITERATIONS = 6
MIN_CORRELATION = 0.5  # median correlation of consecutive frames below this: unrelated images (noise)
GAIN_BLUR_PX = 0.0  # 1.5 helped under 2 % noise (74 -> 81 %) but cost clean zooms (100 -> 98 %)
BACKWARD_AGREEMENT = 0.25  # see refine_with_ecc
ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)


@dataclass
class PairMotion:
    """Motion between frames t and t+1 (reference pixels)."""

    dx: float  # global translation per frame (content flow, x right)
    dy: float  # (y down)
    scale: float  # global scale per frame about the centre (1 = none)
    angle_deg: float  # global rotation per frame about the centre, clockwise on screen > 0
    residual: float  # texture-weighted RMS of the flow minus the global motion
    global_gain: float  # fraction of the frame change that the global motion explains (see above)
    mean_magnitude: float  # flow magnitude statistics
    top5_magnitude: float  # mean of the largest 5 % flow magnitudes
    moving_fraction: float
    moving_dx: float  # mean flow of the moving pixels
    moving_dy: float
    direction_coherence: float  # |mean flow| / mean |flow| over moving pixels (1 = all one way)
    centroid_x: float  # moving pixels' centre, in [-1, 1] image units
    centroid_y: float
    extent_x: float  # moving pixels' standard deviation, image units
    extent_y: float
    divergence: float  # mean radial unit component of the moving flow about its centroid (+1 = burst)
    correlation: float  # Pearson correlation of the two frames
    frame_change: float  # mean absolute grey difference of the two frames, in [0, 1]
    change_sign: float  # mean signed grey change of frame t+1 against frame 0 where it differs by > 0.1


@dataclass
class MotionEstimate:
    pairs: list[PairMotion]
    summary: PairMotion  # median of each field over the pairs
    valid: bool  # False when consecutive frames barely correlate (median over pairs): noise
    size: tuple[int, int]
    span_gain: float = 0.0  # global gain over several frames (see `span_global_gain`)
    flow: Tensor | None = field(default=None, repr=False)  # (f-1, 2, h, w) input pixels, if kept

    def as_dict(self) -> dict:
        return {"valid": self.valid, "size": list(self.size), "span_gain": self.span_gain, "summary": asdict(self.summary)}


def frame_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two grey frames after a blur of ~1.5 reference px.

    The blur keeps the measure about scene structure: thin bright layers (rain streaks) otherwise
    pull it down, while independent noise frames stay uncorrelated after any blur.
    """
    sigma = 1.5 * a.shape[1] / REFERENCE_WIDTH
    a = cv2.GaussianBlur(a.astype(np.float32), (0, 0), sigma).astype(np.float64).ravel()
    b = cv2.GaussianBlur(b.astype(np.float32), (0, 0), sigma).astype(np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt((a @ a) * (b @ b))
    if norm < 1e-9:  # a flat frame: related only to an identical flat frame
        return 1.0 if np.allclose(a, b) else 0.0
    return float(a @ b / norm)


def texture_weights(grey: np.ndarray) -> np.ndarray:
    """Where flow is trustworthy: gradient magnitude, blurred over Farneback's window, in [0, 1]."""
    g = grey.astype(np.float32) / 255.0
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = cv2.GaussianBlur(np.sqrt(gx**2 + gy**2), (0, 0), sigmaX=max(1.0, g.shape[1] / 32))
    return magnitude / max(float(magnitude.max()), 1e-6)


def _design(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows of u = a x - b y + tx (first half) and v = b x + a y + ty (second half)."""
    x, y = x.ravel(), y.ravel()
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    return np.concatenate([np.stack([x, -y, ones, zeros], 1), np.stack([y, x, zeros, ones], 1)])


def fit_similarity(flow: np.ndarray, x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Robust weighted least squares of the similarity flow; returns (a, b, tx, ty).

    Cauchy-weighted iterative reweighting (scale ROBUST_PX) from two starts, no motion and the plain
    weighted fit, keeping the one with the lower robust cost, so the DOMINANT motion of the
    textured pixels wins and Farneback's zero flow on flat patches does not drag it toward zero.
    """
    design, target = _design(x, y), np.concatenate([flow[0].ravel(), flow[1].ravel()])
    base = np.concatenate([weights.ravel(), weights.ravel()])

    def solve(w: np.ndarray) -> np.ndarray:
        sw = np.sqrt(w)
        return np.linalg.lstsq(design * sw[:, None], target * sw, rcond=None)[0]

    def robust(solution: np.ndarray):
        for _ in range(ROBUST_ITERATIONS):
            residual = (target - design @ solution).reshape(2, -1)
            cauchy = 1.0 / (1.0 + (residual**2).sum(0) / ROBUST_PX**2)
            solution = solve(base * np.concatenate([cauchy, cauchy]))
        residual = (target - design @ solution).reshape(2, -1)
        cost = float((weights.ravel() * np.log1p((residual**2).sum(0) / ROBUST_PX**2)).sum())
        return cost, solution

    return min((robust(start) for start in (np.zeros(4), solve(base))), key=lambda pair: pair[0])[1]


def similarity_warp(a: float, b: float, tx: float, ty: float, h: int, w: int) -> np.ndarray:
    """OpenCV 2x3 map from frame t+1 pixels to frame t pixels (inverse of the content motion).

    Content motion about the centre c: p' = M (p - c) + c + t with M = [[1+a, -b], [b, 1+a]];
    its inverse in pixel coordinates is u = M^-1 u' + c - M^-1 (c + t).
    """
    m_inv = np.linalg.inv(np.array([[1 + a, -b], [b, 1 + a]]))
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    return np.concatenate([m_inv, (c - m_inv @ (c + np.array([tx, ty])))[:, None]], axis=1).astype(np.float32)


def warp_to_similarity(warp: np.ndarray, h: int, w: int) -> tuple[float, float, float, float]:
    """Inverse of `similarity_warp` for an affine warp, projected onto the similarity motions."""
    m = np.linalg.inv(warp[:, :2].astype(np.float64))
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    t = m @ (c - warp[:, 2]) - c
    return (m[0, 0] + m[1, 1]) / 2 - 1, (m[1, 0] - m[0, 1]) / 2, float(t[0]), float(t[1])


def invert_similarity(params: tuple) -> tuple:
    """(a, b, tx, ty) of the inverse of the similarity motion `params` (about the same centre)."""
    a, b, tx, ty = params
    inverse = np.linalg.inv(np.array([[1 + a, -b, tx], [b, 1 + a, ty], [0.0, 0.0, 1.0]]))
    return inverse[0, 0] - 1, inverse[1, 0], inverse[0, 2], inverse[1, 2]


def refine_with_ecc(before: np.ndarray, after: np.ndarray, params: tuple) -> tuple:
    """ECC registration of `after` to `before` (work-scale grey), started from `params` (work px).

    ECC over-estimates a zoom when its template is the frame that shows the content LARGER (measured
    on world scenes and photos at 32/64 px: zoom in read ~10 % too fast, zoom out ~1 %), so a zoom-in
    pair is also registered the other way round and that result, inverted, is kept when it agrees with
    the forward one (within BACKWARD_AGREEMENT of its log-scale): on strongly magnified, nearly flat
    frames (late in a 16-frame zoom in) the backward registration can wander off, and then the forward
    one stands.
    """
    forward = _ecc(before, after, params)
    forward_log_scale = math.log(math.hypot(1 + forward[0], forward[1]))
    if forward_log_scale <= 0:
        return forward
    backward = invert_similarity(_ecc(after, before, invert_similarity(forward)))
    backward_log_scale = math.log(math.hypot(1 + backward[0], backward[1]))
    agrees = abs(backward_log_scale - forward_log_scale) <= BACKWARD_AGREEMENT * forward_log_scale
    return backward if agrees else forward


def _ecc(before: np.ndarray, after: np.ndarray, params: tuple) -> tuple:
    h, w = before.shape
    warp = similarity_warp(*params, h, w)
    try:
        _, warp = cv2.findTransformECC(
            after.astype(np.float32), before.astype(np.float32), warp, cv2.MOTION_AFFINE, ECC_CRITERIA, None, 5
        )
    except cv2.error:  # no convergence (e.g. flat frames): keep the flow fit
        return params
    return warp_to_similarity(warp, h, w)


def global_gain(before: np.ndarray, after: np.ndarray, params: tuple, by_halves: bool = False) -> float:
    """1 - sum|after - warp(before)| / sum|after - before| over pixels that the warp can see.

    With `by_halves`, the smallest gain of the top, bottom, left and right halves, each half's
    identity error floored at 5 % of the whole frame's: a layer moving over part of a still scene
    (clouds over the top) can pull the fitted motion toward itself, but the warp then breaks the
    still half, whose gain goes negative. A camera motion explains every half.
    With GAIN_BLUR_PX > 0 both frames are blurred first (pixel noise is explained by no warp).
    """
    h, w = before.shape
    before, after = before.astype(np.float32), after.astype(np.float32)
    if GAIN_BLUR_PX > 0:
        sigma = GAIN_BLUR_PX * w / REFERENCE_WIDTH
        before = cv2.GaussianBlur(before, (0, 0), sigma)
        after = cv2.GaussianBlur(after, (0, 0), sigma)
    warp = similarity_warp(*params, h, w)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    moved = cv2.warpAffine(before, warp, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    seen = cv2.warpAffine(np.ones((h, w), np.float32), warp, (w, h), flags=flags, borderValue=0) > 0.999
    still_error = np.abs(after - before) * seen
    moved_error = np.abs(after - moved) * seen
    total = float(still_error.sum())
    if total < 1e-6:
        return 0.0
    if not by_halves:
        return 1.0 - float(moved_error.sum()) / total
    halves = [np.s_[: h // 2], np.s_[h // 2 :], np.s_[:, : w // 2], np.s_[:, w // 2 :]]
    return min(1.0 - float(moved_error[half].sum()) / max(float(still_error[half].sum()), 0.05 * total) for half in halves)


def signed_change(first: np.ndarray, later: np.ndarray, threshold: float = 0.1) -> float:
    """Mean grey change (in [-1, 1]) where `later` differs from `first` by more than `threshold`.

    Tells a layer that darkens the scene (birds) from one that brightens it (clouds, rain).
    """
    change = (later.astype(np.float32) - first.astype(np.float32)) / 255.0
    changed = np.abs(change) > threshold
    return float(change[changed].mean()) if changed.any() else 0.0


def compose(params: tuple, times: int) -> tuple:
    """The similarity motion (a, b, tx, ty) about the centre applied `times` times in a row."""
    a, b, tx, ty = params
    step = np.array([[1 + a, -b, tx], [b, 1 + a, ty], [0, 0, 1]])
    total = np.linalg.matrix_power(step, times)
    return total[0, 0] - 1, total[1, 0], total[0, 2], total[1, 2]


def span_global_gain(big: list[np.ndarray], params: tuple, refine: bool) -> float:
    """Global gain between frame 1 and frame 1 + span (span = half the clip, >= 1).

    Over several frames a camera motion's image change grows while pixel noise does not, so this
    gain separates camera from local motion far better on noisy clips than per-pair gains (frame 0
    is skipped: local layers appear after it).
    """
    start = 1 if len(big) >= 3 else 0
    span = max(1, (len(big) - 1 - start) // 2)
    motion = compose(params, span)
    if refine:
        motion = refine_with_ecc(big[start], big[start + span], motion)
    return global_gain(big[start], big[start + span], motion, by_halves=True)


def local_statistics(flow: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> dict:
    """Statistics of the moving pixels of a flow (2, h, w) in reference pixels; xs, ys in [-1, 1]."""
    magnitude = np.sqrt((flow**2).sum(0))
    flat = np.sort(magnitude.ravel())
    moving = magnitude > MOVING_PX
    stats = dict(
        mean_magnitude=float(magnitude.mean()),
        top5_magnitude=float(flat[-max(1, len(flat) // 20) :].mean()),
        moving_fraction=float(moving.mean()),
        moving_dx=0.0,
        moving_dy=0.0,
        direction_coherence=0.0,
        centroid_x=0.0,
        centroid_y=0.0,
        extent_x=0.0,
        extent_y=0.0,
        divergence=0.0,
    )
    if moving.sum() >= 3:
        u, v, mm = flow[0][moving], flow[1][moving], magnitude[moving]
        px, py = xs[moving], ys[moving]
        cx, cy = float(px.mean()), float(py.mean())
        rx, ry = px - cx, py - cy
        radius = np.sqrt(rx**2 + ry**2) + 1e-6
        stats.update(
            moving_dx=float(u.mean()),
            moving_dy=float(v.mean()),
            direction_coherence=float(math.hypot(u.mean(), v.mean()) / mm.mean()),
            centroid_x=cx,
            centroid_y=cy,
            extent_x=float(px.std()),
            extent_y=float(py.std()),
            divergence=float(((u * rx + v * ry) / (radius * mm)).mean()),
        )
    return stats


def median_pair(pairs: list[PairMotion]) -> PairMotion:
    return PairMotion(**{k: float(np.median([getattr(p, k) for p in pairs])) for k in asdict(pairs[0])})


def estimate_motion(video: Tensor, keep_flow: bool = False, refine: bool = True) -> MotionEstimate:
    """Estimate global and local motion of one clip `f c h w` (float in [0, 1])."""
    video = check_video(video)
    _, _, h, w = video.shape
    grey = luminance_uint8(video)
    big = upsample(grey)
    k = big[0].shape[1] / w  # work pixels per input pixel
    flow = flow_between(big, h, w)  # input pixels
    unit = REFERENCE_WIDTH / w  # reference pixels per input pixel
    ys, xs = np.meshgrid((np.arange(h) + 0.5 - h / 2) * unit, (np.arange(w) + 0.5 - w / 2) * unit, indexing="ij")
    pairs = []
    for t in range(flow.shape[0]):
        ref_flow = flow[t] * unit
        weights = np.minimum(texture_weights(grey[t]), texture_weights(grey[t + 1]))
        a, b, tx, ty = fit_similarity(ref_flow, xs, ys, weights)
        params = (a, b, tx / unit * k, ty / unit * k)  # work pixels
        if refine:
            params = refine_with_ecc(big[t], big[t + 1], params)
        a, b = params[0], params[1]
        tx, ty = params[2] / k * unit, params[3] / k * unit
        fit = (_design(xs, ys) @ np.array([a, b, tx, ty])).reshape(2, h, w)
        residual = math.sqrt(float((weights * ((ref_flow - fit) ** 2).sum(0)).sum()) / max(float(weights.sum()), 1e-9))
        pairs.append(
            PairMotion(
                dx=float(tx),
                dy=float(ty),
                scale=math.hypot(1 + a, b),
                angle_deg=math.degrees(math.atan2(b, 1 + a)),
                residual=residual,
                global_gain=global_gain(big[t], big[t + 1], params),
                correlation=frame_correlation(grey[t], grey[t + 1]),
                frame_change=float(np.abs(grey[t + 1].astype(np.float32) - grey[t]).mean() / 255.0),
                change_sign=signed_change(grey[0], grey[t + 1]),
                **local_statistics(ref_flow, xs / (REFERENCE_WIDTH / 2), ys / (REFERENCE_WIDTH / 2 * h / w)),
            )
        )
    valid = float(np.median([p.correlation for p in pairs])) >= MIN_CORRELATION
    summary = median_pair(pairs)
    angle = math.radians(summary.angle_deg)
    median_params = (
        summary.scale * math.cos(angle) - 1,
        summary.scale * math.sin(angle),
        summary.dx / unit * k,
        summary.dy / unit * k,
    )
    span_gain = span_global_gain(big, median_params, refine)
    kept = torch.from_numpy(flow) if keep_flow else None
    return MotionEstimate(pairs=pairs, summary=summary, valid=valid, size=(h, w), span_gain=span_gain, flow=kept)
