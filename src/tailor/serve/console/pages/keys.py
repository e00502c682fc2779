"""Console page: keys (being written)."""

from fastapi import APIRouter

router = APIRouter()
