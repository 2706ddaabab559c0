"""Who may call the issuer: principals, scopes, roles and access tokens."""
