"""HTTP routes: thin handlers that validate, call the pipeline, and shape the answer."""

from __future__ import annotations

import base64
import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.inspection import inspect_file
from service.api.model_info import model_info, model_summary
from service.api.schemas import (
    Cell,
    CountQuery,
    CountResponse,
    ErrorResponse,
    FileInfo,
    Health,
    ImageCount,
    InspectQuery,
    ModelInfo,
    PlaneReport,
    QualityReport,
    QualityWarningModel,
    SegmentJSON,
    SegmentQuery,
    Timings,
)
from service.errors import ApiError
from service.files.imaging import encode_output, mask_png
from service.options import CountOptions
from service.serving.failures import as_api_error
from service.serving.pipeline import Segmentation, Upload
from service.serving.state import ServiceState

router = APIRouter()

ERRORS = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "the file could not be decoded as an image",
        401: "CELLCOUNT_API_KEY is set and the request lacks 'Authorization: Bearer <key>'",
        413: "too many bytes, pixels or files",
        415: "not an image format the service reads, or a vendor format (CZI, ND2, LIF) "
        "without the optional readers (pip install 'cellcount[formats]')",
        422: "invalid parameters, or a stack whose plane is not chosen (channel, z, t): the "
        "message lists the file's axes and channels",
        500: "the forward pass failed for the batch holding this request",
        503: "overloaded (see Retry-After) or not ready yet",
        504: "not finished within the request timeout",
    }.items()
}


async def get_state(request: Request) -> ServiceState:
    """Async on purpose: FastAPI runs plain-``def`` dependencies in a thread, per request."""
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None or not state.ready:
        raise ApiError(503, "not_ready", "the model is still loading", {"Retry-After": "5"})
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def counting_options(query: CountOptions) -> CountOptions:
    """The post-processing part of a query, without the endpoint's own output switches."""
    return CountOptions(**query.model_dump(include=set(CountOptions.model_fields)))


async def read_upload(upload: UploadFile, state: ServiceState) -> bytes:
    limit = state.settings.max_upload_bytes
    name = upload.filename or "upload"
    if upload.size is not None and upload.size > limit:
        raise ApiError(
            413, "file_too_large", f"{name}: {upload.size} bytes; limit {limit}", filename=name
        )
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "file_too_large", f"{name}: more than {limit} bytes", filename=name)
    return data


async def read_uploads(uploads: list[UploadFile], state: ServiceState) -> list[Upload]:
    return [
        Upload(upload.filename or "upload", await read_upload(upload, state)) for upload in uploads
    ]


async def count_uploads(
    uploads: list[UploadFile], query: CountOptions, state: ServiceState
) -> list[Segmentation]:
    deadline = time.monotonic() + state.settings.request_timeout_s
    return await state.pipeline.count(
        await read_uploads(uploads, state), counting_options(query), deadline
    )


def quality_report(seg: Segmentation) -> QualityReport:
    quality = seg.quality
    return QualityReport(
        diameter_px=quality.diameter_px,
        network_diameter_px=quality.network_diameter_px,
        trained_diameter_range_px=quality.trained_diameter_range_px,
        ambiguous_fraction=quality.ambiguous_fraction,
        foreground_fraction=quality.foreground_fraction,
        warnings=[QualityWarningModel(code=w.code, message=w.message) for w in quality.warnings]
        + pixel_size_warnings(seg),
    )


def pixel_size_warnings(seg: Segmentation) -> list[QualityWarningModel]:
    """A file's implausible pixel size, ignored: the areas a user expected are missing."""
    why = seg.pixel_size.ignored
    return [] if why is None else [QualityWarningModel(code="pixel_size_ignored", message=why)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def plane_report(seg: Segmentation) -> PlaneReport:
    decoded = seg.decoded
    return PlaneReport(
        format=decoded.format,
        axes=decoded.axes,
        channel=decoded.channel,
        channel_name=decoded.channel_name,
        channel_source=decoded.channel_source,  # type: ignore[arg-type]
        z=decoded.z,
        t=decoded.t,
        position=decoded.position,
    )


def rounded(value: float | None, digits: int = 4) -> float | None:
    """Significant digits, not decimals: densities run to 1e5 and pixel sizes to 1e-2."""
    return None if value is None else float(f"{value:.{digits}g}")


def image_result(name: str, seg: Segmentation, query: CountQuery) -> ImageCount:
    size = seg.pixel_size
    cells = None
    if query.include_cells:
        cells = [
            Cell(
                id=c.id,
                area=c.area,
                area_um2=rounded(size.area_um2(c.area)),
                centroid=c.centroid,
                bbox=c.bbox,
            )
            for c in seg.stats()
        ]
    pixels = seg.decoded.width * seg.decoded.height
    mean_area = seg.mean_cell_area_px
    image_area = size.area_um2(pixels)
    return ImageCount(
        filename=name,
        count=seg.count,
        width=seg.decoded.width,
        height=seg.decoded.height,
        plane=plane_report(seg),
        pixel_size_um=rounded(size.um, 6),
        pixel_size_source=size.source,  # type: ignore[arg-type]
        image_area_mm2=None if image_area is None else rounded(image_area * 1e-6),
        density_per_mm2=rounded(size.density_per_mm2(seg.count, pixels)),
        mean_cell_area_um2=None if mean_area is None else rounded(size.area_um2(mean_area)),
        diameter_um=None
        if size.um is None or seg.diameter_px is None
        else rounded(seg.diameter_px * size.um),
        tiles=seg.tiles,
        threshold=seg.threshold,
        min_area=seg.min_area,
        split_touching=seg.options.split_touching,
        exclude_border=seg.options.exclude_border,
        diameter_px=None if seg.diameter_px is None else round(seg.diameter_px, 2),
        diameter_source=seg.diameter_source,  # type: ignore[arg-type]
        scale=round(seg.scale, 4),
        scale_refined=seg.plan.refined,
        scale_wanted=None if seg.plan.wanted_scale is None else round(seg.plan.wanted_scale, 4),
        quality=quality_report(seg),
        cells=cells,
        mask_png_base64=b64(mask_png(seg.labels)) if query.include_mask else None,
        timings=Timings(**seg.timings),
    )


@router.post(
    "/count",
    response_model=CountResponse,
    responses=ERRORS,
    summary="Count the cells in one or more images",
)
async def count(
    state: StateDep,
    files: Annotated[list[UploadFile], File(description="one or more images", min_length=1)],
    query: Annotated[CountQuery, Query()],
) -> CountResponse:
    """One result per file, in upload order. Every file is decoded before any is counted, so a
    broken file refuses the whole request (4xx naming it) without spending model time."""
    if len(files) > state.settings.max_files:
        raise ApiError(
            413, "too_many_files", f"{len(files)} files; limit {state.settings.max_files}"
        )
    segmentations = await count_uploads(files, query, state)

    def build() -> list[ImageCount]:
        return [
            image_result(upload.filename or "upload", seg, query)
            for upload, seg in zip(files, segmentations, strict=True)
        ]

    # Cell tables and mask PNGs are CPU work for the pool; a bare count is cheaper inline.
    heavy = query.include_cells or query.include_mask
    results = await state.pipeline.run_cpu(build) if heavy else build()
    return CountResponse(results=results, model=model_summary(state))


@router.post(
    "/segment",
    responses={
        200: {
            "content": {
                "image/png": {},
                "image/tiff": {},
                "application/json": {"schema": SegmentJSON.model_json_schema()},
            },
            "description": "the PNG or TIFF (header X-Cell-Count), or JSON with Accept: "
            "application/json",
        },
        **ERRORS,
    },
    response_class=Response,
    summary="Segment one image: mask, instance labels or overlay, as PNG or TIFF",
)
async def segment(
    request: Request,
    state: StateDep,
    file: Annotated[UploadFile, File(description="one image")],
    query: Annotated[SegmentQuery, Query()],
) -> Response:
    """``output=mask``: 0/255 image; ``labels``: instance labels (16-bit PNG, or 32-bit TIFF
    with ``format=tiff``); ``overlay``: RGB image with cell outlines. Send
    ``Accept: application/json`` for the count plus the base64 image."""
    (seg,) = await count_uploads([file], query, state)
    image = await state.pipeline.run_cpu(
        encode_output, query.output, query.format, seg.decoded.plane, seg.labels, seg.pixel_size.um
    )
    media_type = f"image/{query.format}"
    headers = {"X-Cell-Count": str(seg.count), "X-Model-Id": state.model_id}
    accept = request.headers.get("accept", "")
    if "application/json" in accept and media_type not in accept:
        pixels = seg.decoded.width * seg.decoded.height
        body = SegmentJSON(
            filename=file.filename or "upload",
            count=seg.count,
            width=seg.decoded.width,
            height=seg.decoded.height,
            plane=plane_report(seg),
            pixel_size_um=rounded(seg.pixel_size.um, 6),
            density_per_mm2=rounded(seg.pixel_size.density_per_mm2(seg.count, pixels)),
            diameter_px=seg.diameter_px,
            scale=round(seg.scale, 4),
            quality=quality_report(seg),
            output=query.output,
            format=query.format,
            png_base64=b64(image) if query.format == "png" else None,
            tiff_base64=b64(image) if query.format == "tiff" else None,
            model=model_summary(state),
        )
        return JSONResponse(body.model_dump(), headers=headers)
    return Response(image, media_type=media_type, headers=headers)


@router.post(
    "/inspect",
    response_model=FileInfo,
    responses={status: ERRORS[status] for status in (400, 401, 413, 415, 422, 503)},
    summary="What a file holds (positions, axes, channels, pixel size), without counting",
)
async def inspect(
    state: StateDep,
    file: Annotated[UploadFile, File(description="one image or microscope file")],
    query: Annotated[InspectQuery, Query()],
) -> FileInfo:
    """Reads the header and metadata only; ``needs`` lists the options a count must give."""
    name = file.filename or "upload"
    data = await read_upload(file, state)
    try:
        return await state.pipeline.run_cpu(
            inspect_file, name, data, state.settings.max_pixels, query.position
        )
    except Exception as error:
        raise as_api_error(error, name) from error


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Health,
    responses={503: ERRORS[503]},
    summary="Readiness: the model is loaded and warmed up",
)
async def ready(state: StateDep) -> Health:
    return Health(status="ready")


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={status: ERRORS[status] for status in (401, 503)},
    summary="The served checkpoint and how it runs",
)
async def model(state: StateDep) -> ModelInfo:
    return model_info(state)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={401: ERRORS[401]},
)
async def metrics(request: Request) -> Response:
    state: ServiceState | None = getattr(request.app.state, "service", None)
    body = generate_latest(state.metrics.registry) if state is not None else b""
    return Response(body, media_type=CONTENT_TYPE_LATEST)
