"""REST dialects: each hosted API's JSON body ↔ the core's normalised request."""
