"""Making the pictures: the stages of a generation (selfie, styled takes, validated proofs,
print master), their quality gates and the catalog previews.
"""
