"""Write analysis results back into photos' metadata: XMP sidecars and embedded EXIF/IPTC/XMP."""
