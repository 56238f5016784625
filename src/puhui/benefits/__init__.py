"""Commercial benefits on top of the basic tier (the product language grows here)."""
