"""Finding faces and following them: MTCNN detection, the single-face tracker, every-face tracking with identities."""
