"""Device profiles shipped with adaptc (YAML, schema version 1). Installed as ``adaptc.device_profiles``."""
