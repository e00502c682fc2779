"""Console page: jobs (being written)."""

from fastapi import APIRouter

router = APIRouter()
