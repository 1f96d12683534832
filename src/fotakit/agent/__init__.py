"""fotakit device agent: LwM2M client with Object 5 FOTA, A/B slots and verified updates."""
