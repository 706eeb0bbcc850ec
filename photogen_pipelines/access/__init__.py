"""Who may call us: the shops' API keys and the signed links we hand out."""
