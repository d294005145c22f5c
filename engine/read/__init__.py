"""Reading runs back: status, replay, events described in words, measured times."""
