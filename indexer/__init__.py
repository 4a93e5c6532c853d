"""Indexer: the gallery of enrolled people, FAISS search and enrolment (built on ``vigil``)."""
