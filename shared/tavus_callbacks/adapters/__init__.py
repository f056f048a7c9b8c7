"""Translation functions between each platform and the core Request/Response."""
