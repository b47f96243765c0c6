"""Users who log in by email, and the JWT endpoints that authenticate them."""
