"""rnnbench: a command-line experiment runner for recurrent-cell research."""
__version__ = "0.1.0"
