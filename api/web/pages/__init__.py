"""The console's pages: one module per page (or family of pages), each an APIRouter."""
