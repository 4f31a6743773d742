"""Builds an ImageFolder dataset from Flickr searches (driven by data/flickr_dataset.py).

net    HTTP with bounded retries, and the flickr.photos.search API
state  OUTDIR/.state: cached search pages, downloaded photos, one record per fetched photo
build  collect unique valid images per class, split them from the seed, write layout + manifest
"""
