"""Console page: review (being written)."""

from fastapi import APIRouter

router = APIRouter()
