"""Per-platform mapping of native payloads onto the canonical order/refund/customer records."""
