"""Server-side update orchestration: per-device update jobs and fleet campaigns."""
