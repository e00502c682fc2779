"""After deployment: what every served model did (records), and, built on them, how it is doing."""
