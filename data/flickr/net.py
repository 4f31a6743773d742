"""HTTP for the dataset builder: downloads with a timeout and bounded retries, and Flickr's
flickr.photos.search REST method (https://www.flickr.com/services/api/flickr.photos.search.html)."""
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request

USER_AGENT = "vggcache-dataset/1"


class FetchError(Exception):
    """A download that failed. `permanent` failures (a 4xx answer) are not worth retrying later;
    the others (network errors, timeouts, 5xx, 429) may succeed on a later run."""

    def __init__(self, message, permanent):
        super().__init__(message)
        self.permanent = permanent


class ApiError(Exception):
    """The search API refused or could not be reached: the build cannot continue."""


class Fetcher:
    def __init__(self, timeout, retries, retry_wait):
        self.timeout = timeout
        self.retries = retries
        self.retry_wait = retry_wait

    def get(self, url):
        """Returns (body, final URL after redirects) of a 200 answer, or raises FetchError after
        1 + retries attempts with exponential backoff between them."""
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_wait * 2 ** (attempt - 1))
            try:
                req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    return r.read(), r.geturl()
            except urllib.error.HTTPError as e:
                # 408 and 429 are "try again later"; every other 4xx will not change.
                if 400 <= e.code < 500 and e.code not in (408, 429):
                    raise FetchError(f"HTTP {e.code} {e.reason}", permanent=True) from None
                last = f"HTTP {e.code} {e.reason}"
            except urllib.error.URLError as e:
                last = f"network error: {e.reason}"
            except (OSError, http.client.HTTPException) as e:  # timeouts, resets, short bodies
                last = f"network error: {e.__class__.__name__} {e}".strip()
        raise FetchError(f"{last} (gave up after {self.retries + 1} attempts)", permanent=False)


def search_url(api_base, api_key, keyword, page, per_page):
    # Keyword as both free text and tag, ranked by relevance; url_c (800 px on the longest side)
    # and the license come back in the same answer, so no per-photo API calls are needed.
    params = {
        "method": "flickr.photos.search",
        "api_key": api_key,
        "text": keyword,
        "tags": keyword,
        "sort": "relevance",
        "media": "photos",
        "extras": "url_c,license",
        "per_page": per_page,
        "page": page,
        "format": "json",
        "nojsoncallback": 1,
    }
    return api_base.rstrip("/") + "/services/rest/?" + urllib.parse.urlencode(params)


def search_page(fetcher, api_base, api_key, keyword, page, per_page):
    """One page of results: {"page", "pages", "perpage", "total", "photo": [...]}."""
    url = search_url(api_base, api_key, keyword, page, per_page)
    try:
        body, _ = fetcher.get(url)
    except FetchError as e:
        # The message never includes the URL: it carries the API key.
        raise ApiError(f"search '{keyword}' page {page}: {e}") from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise ApiError(f"search '{keyword}' page {page}: the answer is not JSON "
                       f"(starts with {body[:60]!r})") from None
    if doc.get("stat") != "ok":
        raise ApiError(f"search '{keyword}' page {page}: Flickr API error {doc.get('code', '?')}: "
                       f"{doc.get('message', 'no message')}")
    photos = doc.get("photos")
    if not isinstance(photos, dict) or not isinstance(photos.get("photo"), list):
        raise ApiError(f"search '{keyword}' page {page}: no 'photos.photo' list in the answer")
    return photos
