"""Training of the ensemble members and writing of model packages (not loaded by the service)."""
