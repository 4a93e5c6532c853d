"""The API's routes, one module per resource, each an ``APIRouter`` that ``create_app`` includes.

health.py   health, readiness and the service's status
people.py   the gallery: list, show, enrol from uploads, add photos, rename, erase
images.py   identify, analyze and detect on an uploaded image
events.py   past events, a page at a time
"""
