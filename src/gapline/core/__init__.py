"""What every layer shares and nothing of gapline's own: error types and their one-line
messages, atomic file writes, signal handling, process exit codes, running DVC."""
