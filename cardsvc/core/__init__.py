"""Formats and rules shared by the issuer, the reader agent and partners.

This package imports only ``cryptography``, ``pyjwt`` and ``cbor2``.
"""
