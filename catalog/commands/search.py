"""search: find photos by words, phrases, colours, scene, camera and date."""

from __future__ import annotations

import click

from catalog.commands.context import load_settings
from catalog.commands.output import echo_json
from catalog.shape import SHAPES
from catalog.terminal import escape


class SearchCommand(click.Command):
    """Unknown `-word`s reach the query as exclusions; an unknown `--option` is a usage error.

    click can only ignore unknown options wholesale, so before it parses, every `--name`
    ahead of a lone `--` (skipping the values of options that take one) must be ours.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        params = self.get_params(ctx)
        names = {name for p in params for name in (*p.opts, *p.secondary_opts)}
        takes_value = {name for p in params if isinstance(p, click.Option) and not p.is_flag
                       for name in p.opts}
        words = iter(args)
        for arg in words:
            if arg == "--":
                break
            if not arg.startswith("--"):
                continue
            name = arg.split("=", 1)[0]
            if name not in names:
                raise click.NoSuchOption(name, possibilities=sorted(n for n in names if n.startswith("--")),
                                         ctx=ctx)
            if name in takes_value and "=" not in arg:
                next(words, None)  # its value, which may itself start with --
        return super().parse_args(ctx, args)


# No -h here: `-white` must reach the query as an exclusion, not be read as -w -h -i -t -e.
@click.command(cls=SearchCommand, short_help="Search photos by words, colour, scene, place, camera or date.",
               context_settings={"ignore_unknown_options": True, "help_option_names": ["--help"]})
@click.argument("query", nargs=-1)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000), help="How many results.")
@click.option("--color", help="A colour name (blue, orange, ...) or #rrggbb in the photo's palette.")
@click.option("--scene", help="Scene as analysed, e.g. outdoor, indoor.")
@click.option("--mood", help="Mood as analysed, e.g. peaceful.")
@click.option("--orientation", type=click.Choice(SHAPES, case_sensitive=False))
@click.option("--place", help="A place the photo was taken: city, region or country (from its GPS), e.g. rome.")
@click.option("--camera", help="Part of the camera make or model, e.g. canon or 'iphone 12'.")
@click.option("--after", help="Taken on or after the start of this date: 2019, 2019-07 or 2019-07-04.")
@click.option("--before", help="Taken before the start of this date: 2020, 2020-01 or 2020-01-15.")
@click.option("--json", "as_json", is_flag=True, help="Print full records as a JSON array.")
@click.pass_context
def search(ctx, query, limit, color, scene, mood, orientation, place, camera, after, before, as_json):
    """Search the catalogue: tags, descriptions, objects, scene, mood, places, text seen in
    the photos, and folder/file names.

    \b
    Words are AND-ed:        catalog search sunset beach
    "Quoted phrases":        catalog search '"paris trip"'
    Exclude with -word:      catalog search beach -night
    Either word with OR:     catalog search sunset OR sunrise
    Prefixes with *:         catalog search sun*
    Only in place names:     catalog search place:rome   (or --place rome)
    Filters only:            catalog search --color orange --after 2019
    A word that starts with -- goes after a lone --: catalog search -- beach --x

    Results come best first (tags weigh most), one line per photo: its path, how
    many copies exist, its top tags and where it was taken.
    """
    from catalog.search import Filters, connect
    from catalog.search import search as run_search

    config = load_settings(ctx)
    filters = Filters(color=color, scene=scene, mood=mood, orientation=orientation, camera=camera,
                      after=after, before=before, place=place)
    conn = connect(config.database)
    results = run_search(conn, " ".join(query), filters, limit=limit)
    if as_json:
        echo_json(results)
        return
    if not results:
        click.echo("No photos found.", err=True)
        return
    for r in results:
        copies = f" (+{r['copies'] - 1} copies)" if r["copies"] > 1 else ""
        tags = escape(", ".join(map(str, r["tags"][:6])))
        place = f"  ({escape(r['place'])})" if r["place"] else ""
        click.echo(f"{escape(r['path'])}{copies}" + (f"  [{tags}]" if tags else "") + place)
