"""The LwM2M protocol without I/O: paths, the object model, codecs, registration wire format.

Nothing in this package opens a socket or a file (except the DDF loader, which reads the
XML a caller points it at). Spec: OMA-TS-LightweightM2M-Core 1.1.1 / 1.2.
"""
