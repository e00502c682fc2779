"""Console page: monitoring (being written)."""

from fastapi import APIRouter

router = APIRouter()
