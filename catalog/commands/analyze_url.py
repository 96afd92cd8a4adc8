"""analyze-url: analyse one image by URL with the ImgTags API and print the result."""

from __future__ import annotations

import dataclasses

import click

from catalog.commands.context import load_settings
from catalog.commands.output import echo_json
from catalog.errors import ConfigError


@click.command("analyze-url", short_help="Analyse one image by URL with ImgTags; nothing is stored.")
@click.argument("url")
@click.pass_context
def analyze_url(ctx, url):
    """Ask ImgTags to analyse the image at URL (ImgTags fetches it) and print
    the analysis as JSON. Nothing is stored. Needs IMGTAGS_API_KEY."""
    from catalog.analyze import make_analyzer

    config = load_settings(ctx)
    if not config.api_key():
        raise ConfigError(f"analyze-url uses the ImgTags API: set ${config.imgtags.api_key_env}")
    config = dataclasses.replace(config, analysis=dataclasses.replace(config.analysis, analyzer="imgtags"))
    analyzer = make_analyzer(config)
    try:
        analysis = analyzer.analyze_url(url)
    finally:
        analyzer.close()
    echo_json(dataclasses.asdict(analysis))
