"""Forms of the Batches page (the API has its serializers; both end in the same services)."""

from django import forms


class BatchStartForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[("upload", "Upload an archive"), ("folder", "Server folder"), ("s3", "S3 prefix")]
    )
    file = forms.FileField(required=False, help_text="A zip or tar.")
    path = forms.CharField(required=False, max_length=1000)
    uri = forms.CharField(required=False, max_length=1100)
    # Videos in the source: frames sampled per second (the service checks PICTOR_VIDEO_MAX_FPS).
    fps = forms.FloatField(required=False, min_value=0.01)


class ResultsFilterForm(forms.Form):
    label = forms.CharField(required=False, max_length=100)
    min_confidence = forms.FloatField(required=False, min_value=0, max_value=1)
    max_confidence = forms.FloatField(required=False, min_value=0, max_value=1)
    page = forms.IntegerField(required=False, min_value=1)


class ToSamplesForm(forms.Form):
    key = forms.CharField(required=False, max_length=1024)  # repeated: read with getlist
    max_confidence = forms.FloatField(required=False, min_value=0, max_value=1)
