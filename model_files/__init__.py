"""Model files without ComfyUI: where they live (`folders`), which exist (`catalogue`), how to fetch them (`hub`)."""
