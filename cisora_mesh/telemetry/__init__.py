"""OpenTelemetry helpers: attribute-name constants and the decision/transition span helpers."""
