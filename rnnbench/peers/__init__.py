"""Other frameworks' implementations of the articles' cells, timed beside ours by ``rnnbench bench
--peer``. Optional: a peer's framework is not a dependency of rnnbench."""
