"""dptrain: differentially private training of medical classifiers with a built-in privacy audit."""

__version__ = "0.1.0"
