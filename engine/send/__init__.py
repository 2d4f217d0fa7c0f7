"""Sending: the dispatcher (:mod:`.dispatcher`, made of feeding, admission, sending and
settling over one shared state; lanes, jobs and the statistics it reports), the campaign's
workers, provider sessions and preflight."""
