"""Portal pages of the campaigns app, one module per area; each module ends with its ``urlpatterns``."""
