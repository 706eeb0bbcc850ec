"""Pixels in and out: decoding uploads, crops, encoding print files, and the measures taken on
pictures (proof variety, print detail).
"""
