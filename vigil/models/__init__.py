"""Face models: detector (MTCNN), aligner and embedders."""
