"""The integrator's operations on built wheels and staged trees, judged by the one tag rule
(:mod:`dynawheel.platform_tags`): what a tree's content supports (`content`), `build` with tags from
content, `tags` (retag a wheel, members copied raw) and `merge` (thin macOS wheels into universal2,
or identical wheels into one with all their tags)."""
