"""What draws on a terminal for every upper layer: rich's progress bars on stderr, shown by
the command line, the API and the Lightning callbacks alike."""
