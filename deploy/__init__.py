"""Installing katib-nas next to a Katib deployment: image names, katib-config registration, cluster access."""
