"""Image IO: reading exemplars, writing results with their JSON sidecars, parsing sizes."""
