"""Quotes: (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/quotes", tags=["quotes"])
