"""Similar photos (issue 13): perceptual fingerprints, copy/edit/burst/similar relations, groups."""
