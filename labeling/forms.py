from django import forms


class SampleFilterForm(forms.Form):
    labeled = forms.ChoiceField(choices=[("", "All"), ("false", "Unlabeled"), ("true", "Labeled")], required=False)
    label = forms.CharField(required=False)
    video = forms.RegexField(regex=r"^[0-9a-f]{64}$", required=False, widget=forms.HiddenInput)

    def labeled_value(self) -> bool | None:
        value = self.cleaned_data.get("labeled") if self.is_valid() else ""
        return {"true": True, "false": False}.get(value)
