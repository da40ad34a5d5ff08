"""Lightning callbacks: metric evaluation during validation, sample previews."""
