"""Where frames come from: video files, frame folders, images and cameras (decoding, rotation, timestamps)."""
