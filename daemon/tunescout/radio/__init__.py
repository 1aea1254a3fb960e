"""Radio for MPD: keep MPD's queue a few tracks ahead of the current song, chosen by sound."""
