"""Customers: (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/customers", tags=["customers"])
