"""Packs: (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/packs", tags=["packs"])
