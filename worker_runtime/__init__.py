"""The worker subprocess: loads an app's workflows and runs the handlers takod assigns to it."""
