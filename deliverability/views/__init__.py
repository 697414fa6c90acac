"""Portal views of deliverability, one module per area; each module ends with its ``urlpatterns``."""
