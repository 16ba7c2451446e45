"""Model files without ComfyUI: where they live (`folders`), which ones exist (`catalogue`), how to fetch them (`hub`)."""
